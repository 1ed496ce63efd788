"""label-factory pipeline: target-agnostic filter -> ground -> verify -> identify stages."""
