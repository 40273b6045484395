"""Speed machinery that is not a layer's own math: reusable buffers, flat parameter arrays,
blocked epochs. Private; imports no other part of depthlab.
"""
