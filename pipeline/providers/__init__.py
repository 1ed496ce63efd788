"""Model providers behind two narrow interfaces (see ``base``) and a per-process cache."""
