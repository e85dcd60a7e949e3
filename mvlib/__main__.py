from mvlib.cli import main

raise SystemExit(main())
