"""Open-set identification: CLIP embeddings of labeled reference crops, searched per box.

* ``embedder``    open_clip image embeddings (model + pretrained tag, or a local config/checkpoint),
                  optionally through a projection head
* ``index``       the reference index: unit vectors + stable ids + label/variant/source, atomic
                  persistence, search (labels, margins, thresholds)
* ``ann``         which vectors a query looks at: exact below ``LF_ANN_MIN``, IVF-SQ8 above
* ``head``        projection head on frozen CLIP features: SupCon training, head file, ``ProjectedEmbedder``
* ``headconfig``  the head's training settings (no torch import, for the CLI parser)
* ``naming``      reference filename -> (label, variant)
* ``report``      verify report (leave-one-out self-identification, confusable pairs, margins; with/without a head)
* ``stage``       ``Identifier``: the Pipeline's identify hook
* ``cli``         ``label-factory identify index|verify|search|train``
"""
