"""Raw media -> feature set: IEMOCAP and media list readers, acoustic/lexical/visual extractors,
the parallel, shardable and resumable driver, and the shard merge (see :mod:`mer_lib.features.api`)."""
