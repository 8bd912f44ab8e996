from relaychat.cli import main

main()
