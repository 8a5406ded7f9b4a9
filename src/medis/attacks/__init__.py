"""Attacks: the iterative engine, update rules, targets, success and stop criteria."""
