from learner.ml.simulate.cli import main

raise SystemExit(main())
