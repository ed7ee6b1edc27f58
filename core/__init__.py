"""Code shared by the apps and owned by neither: the error family and the YAML source helpers.

Nothing here imports Django models or another package of this project, so both apps (and the course files'
validator, which runs without a database) can depend on it without depending on each other.
"""
