"""The LEAP Hand on-palm reorientation task (task), its world-model environment (world_model_env),
its MuJoCo twin (mujoco_env), and clips recorded in the twin (clips)."""
