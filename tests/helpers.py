"""Shared builders for the physics tests: a 5 cm, 100 g cube of spheres."""

import dataclasses

import torch

from cgwm_env.physics.model import Model, box_model

SIDE, MASS = 0.05, 0.1


def cube_model(mu=0.5, per_edge=10, dtype=torch.float32, **model_kwargs) -> Model:
    return box_model(SIDE, MASS, mu, per_edge, dtype=dtype, **model_kwargs)


def with_mu(model: Model, mu) -> Model:
    raw = torch.log(torch.expm1(torch.as_tensor(mu, dtype=model.params.mu_raw.dtype)))
    return dataclasses.replace(model, params=dataclasses.replace(model.params, mu_raw=raw))
