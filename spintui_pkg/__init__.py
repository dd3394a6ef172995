"""spintui: Spinning Up's RL algorithms and block-sparse kernels for PyTorch, with a terminal dashboard.

The code lives in the repository's top-level folders (algos/, kernels/, profiles/, tui/), installed
as spintui.algos, spintui.kernels, spintui.profiles and spintui.tui.
"""

__version__ = "0.1.0"
