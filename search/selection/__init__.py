"""Selection: non-dominated sorting and crowding (`pareto`), survivors, parents, the noise floor
and the keep rule (`population`). Pure: the standard library and numpy only.
"""
