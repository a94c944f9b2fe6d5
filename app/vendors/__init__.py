"""EDR vendors: clients (one module each), integrations stored as data, and the posture sync engine."""
