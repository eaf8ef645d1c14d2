from lexactum.cli import main

raise SystemExit(main())
