"""Making datasets in the research format (``crashwatch.contract.dataset``), torch-free: the generator of
synthetic drives (``synth``), importers of public datasets (``importers``: Nexar, DAD, CCD, DoTA) and the
indexer of a folder of labelled videos (``index``)."""
