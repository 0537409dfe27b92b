from medchain.cli.main import main

main()
