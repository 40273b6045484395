"""The signal instruments: probe, mean-field theory, linear regions, Jacobian spectra, LSUV.

Imports the network math (:mod:`depthlab.nn`) only.
"""
