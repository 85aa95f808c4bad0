from emolib.cli import main

raise SystemExit(main())
