from medis.data.synthetic import main

main()
