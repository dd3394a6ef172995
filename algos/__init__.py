"""spintui.algos."""
