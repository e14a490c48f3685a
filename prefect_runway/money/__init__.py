"""Money: prices, cost plans, budgets, balances and daily spend; pure (no Prefect)."""
