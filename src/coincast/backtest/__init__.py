"""Walk-forward evaluation: the engine, the trading simulation, the look-ahead audit."""
