from penguiflow_agents.cli import main

raise SystemExit(main())
