"""Learning-rate policies: pure functions of the step, as Caffe's
SGDSolver::GetLearningRate defines them.

`step` counts the updates already applied (Caffe's iter_): the first update
uses step 0. A linear warmup (not in Caffe) multiplies the policy's rate by a
factor that rises from `warmup_factor` at step 0 to 1 at `warmup_iters`.
"""

import bisect
import math

POLICIES = ("fixed", "step", "multistep", "exp", "inv", "poly", "sigmoid")


def fixed(step, base_lr):
    return base_lr


def step_decay(step, base_lr, gamma, stepsize):
    """base_lr * gamma ^ floor(step / stepsize)."""
    return base_lr * gamma ** (step // stepsize)


def multistep(step, base_lr, gamma, stepvalue):
    """base_lr * gamma ^ (number of stepvalues <= step); stepvalues ascend."""
    return base_lr * gamma ** bisect.bisect_right(list(stepvalue), step)


def exp(step, base_lr, gamma):
    return base_lr * gamma ** step


def inv(step, base_lr, gamma, power):
    return base_lr * (1.0 + gamma * step) ** (-power)


def poly(step, base_lr, power, max_iter):
    """Reaches 0 at max_iter."""
    return base_lr * (1.0 - step / max_iter) ** power


def sigmoid(step, base_lr, gamma, stepsize):
    return base_lr * (1.0 / (1.0 + math.exp(-gamma * (step - stepsize))))


def warmup_multiplier(step, warmup_iters, warmup_factor):
    """Linear warmup: warmup_factor at step 0, rising to 1 at warmup_iters."""
    if step >= warmup_iters:
        return 1.0
    alpha = step / warmup_iters
    return warmup_factor * (1.0 - alpha) + alpha


def learning_rate(step, base_lr, lr_policy="fixed", gamma=0.0, power=0.0, stepsize=0,
                  stepvalue=(), max_iter=0, warmup_iters=0, warmup_factor=1.0):
    """The rate for the update at `step` under `lr_policy`, warmup included."""
    if lr_policy == "fixed":
        rate = fixed(step, base_lr)
    elif lr_policy == "step":
        rate = step_decay(step, base_lr, gamma, stepsize)
    elif lr_policy == "multistep":
        rate = multistep(step, base_lr, gamma, stepvalue)
    elif lr_policy == "exp":
        rate = exp(step, base_lr, gamma)
    elif lr_policy == "inv":
        rate = inv(step, base_lr, gamma, power)
    elif lr_policy == "poly":
        rate = poly(step, base_lr, power, max_iter)
    elif lr_policy == "sigmoid":
        rate = sigmoid(step, base_lr, gamma, stepsize)
    else:
        raise ValueError(f"unknown lr_policy '{lr_policy}' (known: {', '.join(POLICIES)})")
    return rate * warmup_multiplier(step, warmup_iters, warmup_factor)


def config_learning_rate(config, step):
    """learning_rate() with the values of a SolverConfig."""
    return learning_rate(step, config.base_lr, config.lr_policy, config.gamma, config.power,
                         config.stepsize, config.stepvalue, config.max_iter,
                         config.warmup_iters, config.warmup_factor)
