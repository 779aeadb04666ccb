"""`quanzu simulate`: a synthetic district driven through a running Quanzu at an accelerated clock.

Pure parts (district, arrivals, behaviour, policy, staffing, report) are plain functions of their inputs; actors,
setup, observe and run talk to a real system over HTTP (and, for setup and the report's task times, through the
same database functions the `quanzu` command uses).
"""
