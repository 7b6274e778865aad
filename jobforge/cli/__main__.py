from jobforge.cli.main import main

main()
