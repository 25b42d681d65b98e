"""Boards: profiles (device identity, clocks, budgets), the inventory file, and flash strategies."""
