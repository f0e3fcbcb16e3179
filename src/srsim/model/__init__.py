"""The super-resolution networks (paper Figs. 7, 8), their losses and checkpoints."""

from srsim.model.checkpoint import load_generator, save_checkpoint
from srsim.model.critic import Critic
from srsim.model.generator import Generator
from srsim.model.lag2eul import lag2eul_density

__all__ = ["Generator", "Critic", "lag2eul_density", "save_checkpoint", "load_generator"]
