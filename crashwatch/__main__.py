from crashwatch.cli import main

main()
