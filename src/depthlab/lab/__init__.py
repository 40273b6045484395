"""The lab: named experiments, figures, HTML reports, the command line and sweeps.

Uses every other part.
"""
