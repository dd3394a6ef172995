from spintui.tui.cli import main

main()
