"""AutoLabelModel: the label-factory cascade (filter -> ground -> verify) as a Label Studio ML backend."""
