"""Open-set identification: CLIP embeddings of labeled reference crops, searched per box.

* ``embedder``  open_clip image embeddings (model + pretrained tag, or a local config/checkpoint)
* ``index``     the reference index: unit vectors + label/variant/source, atomic persistence, search
* ``naming``    reference filename -> (label, variant)
* ``report``    verify report (leave-one-out self-identification, confusable pairs, margins)
* ``stage``     ``Identifier``: the Pipeline's identify hook
* ``cli``       ``label-factory identify index|verify|search``
"""
