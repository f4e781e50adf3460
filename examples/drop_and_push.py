"""Drop a cube, push another, and differentiate a slide through the simulator.

Run: python examples/drop_and_push.py
"""

import dataclasses

import torch

from cgwm_env import State, box_model, rollout

# A 5 cm, 100 g cube of 488 spheres, with a 1 cm spherical pusher.
model = box_model(size=0.05, mass=0.1, mu=0.5, pusher_points=torch.zeros(1, 3), pusher_radii=torch.tensor([0.01]))

# Two environments in one batch: env 0 falls from 10 cm, env 1 rests and gets pushed along +x.
start = State.make([[0.0, 0.0, 0.125], [0.0, 0.0, 0.025]], pusher=[[0.0, 0.0, 10.0], [-0.04, 0.0, 0.025]])
steps = round(0.5 / model.dt)
actions = torch.zeros(2, steps, 3)
actions[1, : steps // 2, 0] = 0.3  # push at 0.3 m/s for 0.25 s, then stop
traj = rollout(model, start, actions)
print(f"drop: final height {traj.position[0, -1, 2] * 1e3:.1f} mm")
print(f"push: cube moved {traj.position[1, -1, 0] * 1e3:.1f} mm, pusher {traj.pusher[1, -1, 0] * 1e3 + 40:.1f} mm")

# Gradients flow to the physical parameters: how far does a cube launched at 0.5 m/s slide, and
# how does that change with mu? (mu = softplus(mu_raw) keeps mu >= 0 while learning.)
mu = torch.tensor(0.5, requires_grad=True)


def slide_distance(mu):
    raw = torch.log(torch.expm1(mu))
    m = dataclasses.replace(model, params=dataclasses.replace(model.params, mu_raw=raw))
    launched = State.make([[0.0, 0.0, 0.025]], velocity=[[0.5, 0.0, 0.0]])
    return rollout(m, launched, steps=round(0.4 / model.dt)).position[0, -1, 0]


distance = slide_distance(mu)
(grad,) = torch.autograd.grad(distance, mu)
with torch.no_grad():
    finite_difference = (slide_distance(torch.tensor(0.501)) - slide_distance(torch.tensor(0.499))) / 0.002
print(f"slide: {distance.item() * 1e3:.1f} mm; d(distance)/d(mu) = {grad.item() * 1e3:.1f} mm by autograd, "
      f"{finite_difference.item() * 1e3:.1f} mm by finite differences (Coulomb: {-0.25 / (2 * 9.81 * 0.25) * 1e3:.1f})")
