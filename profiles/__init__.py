"""spintui.profiles."""
