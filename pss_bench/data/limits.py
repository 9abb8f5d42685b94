"""Upper bounds of ``make-synthetic``'s arguments: past them a typo is a memory or time bomb.

Kept apart from :mod:`pss_bench.data.synthstreets` (numpy, cityscapesscripts)
so that the CLI can declare its options without importing the generator.
"""

MAX_FRAMES = 1_000_000
MAX_SIDE = 8192
