"""Follow: the frontier of complete frames of a live source, from its key datasets.

Private; the public names are in ``h5live``. Modules: ``keys`` (key views, the tail window),
``gaps`` (the gap policy), ``follower`` (KeyFollower, FollowPolicy), ``rows``
(RowKeyFollower).
"""
