"""Forge's ``modules_forge`` package: ``import modules_forge`` succeeding is how extensions detect Forge."""
