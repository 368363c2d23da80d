from mlpfctl.cli.app import main

main()
