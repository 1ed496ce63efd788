"""Label Studio ML backends: ``base`` implements the label-studio-ml 2.x contract on current Flask,
``autolabel`` runs the label-factory cascade behind it."""
