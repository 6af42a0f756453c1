"""The call's states and the engine that walks them. Imports no flask, stripe or sqlalchemy."""
