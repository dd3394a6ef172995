"""spintui.tui."""
