"""Figures for Context Error: retrievals (the paper's Figures 1 and 4) and context maps (Figure 5).

matplotlib is imported lazily, with the non-interactive Agg backend; figures
are written atomically. Nothing here prints.
"""
