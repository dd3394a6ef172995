"""spintui.kernels."""
