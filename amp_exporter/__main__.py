from amp_exporter.cli import main

raise SystemExit(main())
