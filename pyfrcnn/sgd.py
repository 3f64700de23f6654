"""Caffe-semantics parameter updates: SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam.

One step's update follows SGDSolver::ApplyUpdate: clip all gradients by their
global L2 norm, then for each parameter divide the gradient by iter_size
(Normalize), add weight decay (Regularize: L2 adds decay * w, L1 decay *
sign(w), with decay = weight_decay * decay_mult) and turn it into an update
with local_rate = rate * lr_mult (ComputeUpdateValue); finally w -= update.

Unlike torch.optim.SGD, Caffe's SGD keeps the learning rate inside the
momentum history (history = momentum * history + local_rate * grad), so the
two differ after every change of the rate. Parameters with requires_grad False
(lr_mult 0) are skipped entirely; a parameter without a gradient this step
counts as a zero gradient, as in Caffe.
"""

import math

import torch

from .errors import ConfigError


def clip_gradients(grads, clip):
    """Scale all gradients down so their global L2 norm is at most `clip` (< 0: never).
    Returns the norm before clipping (None when not computed)."""
    if clip < 0 or not grads:
        return None
    # One read from the device for all of them; summed in Python, in the same order.
    norm = math.sqrt(sum(torch.stack([g.double().pow(2).sum() for g in grads]).tolist()))
    if norm > clip:
        for g in grads:
            g.mul_(clip / norm)
    return norm


class Updater:
    """Applies one Caffe update per step to the learnable parameters of a net.

    `params` is Net.learnable_params(): [(param, lr_mult, decay_mult, name)].
    """

    history_size = 1

    def __init__(self, params, config):
        self.config = config
        self.params = [(p, lr, decay, name) for p, lr, decay, name in params if p.requires_grad]
        self.history = {name: [torch.zeros_like(p, memory_format=torch.contiguous_format)
                               for _ in range(self.history_size)]
                        for p, _, _, name in self.params}

    def gradients(self):
        """Each parameter's gradient, a zero tensor where backward left none."""
        for p, _, _, _ in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        return [p.grad for p, _, _, _ in self.params]

    @torch.no_grad()
    def apply(self, rate, step):
        """Update the parameters in place for the step `step` (0 for the first
        update) at learning rate `rate`. Returns the gradient norm if clipping
        computed it."""
        c = self.config
        grads = self.gradients()
        norm = clip_gradients(grads, c.clip_gradients)
        if self.multi_tensor and not getattr(c, "single_tensor_updates", False):
            self._apply_groups(rate, step)
        else:
            self._apply_each(grads, rate, step)
        return norm

    def _apply_each(self, grads, rate, step):
        """The plain update: parameter by parameter, as SGDSolver::ApplyUpdate."""
        c = self.config
        for (p, lr_mult, decay_mult, name), grad in zip(self.params, grads):
            if c.iter_size > 1:
                grad.mul_(1.0 / c.iter_size)
            local_decay = c.weight_decay * decay_mult
            if local_decay:
                if c.regularization_type == "L2":
                    grad.add_(p, alpha=local_decay)
                else:
                    grad.add_(torch.sign(p), alpha=local_decay)
            update = self.compute_update(grad, self.history[name], rate * lr_mult, step)
            p.sub_(update)

    # The multi-tensor update: the same arithmetic as _apply_each, op for op, on
    # the parameters grouped by (lr_mult, decay_mult) with torch._foreach_* ops,
    # so a step issues about ten ops per group instead of ten per parameter (the
    # fast net: 29 parameters in 4 groups; its Adam update went from about 300
    # torch calls to 40, see BENCHMARKS.md "Training step"). On the CPU foreach
    # ops run the same per-tensor kernels, so the result is bit for bit the plain
    # one (tests/engine/test_sgd.py compares them); `single_tensor_updates: true`
    # in a solver file selects the plain path.
    multi_tensor = False

    def _groups(self):
        if getattr(self, "_group_cache", None) is None:
            groups = {}
            for p, lr_mult, decay_mult, name in self.params:
                groups.setdefault((lr_mult, decay_mult), []).append((p, name))
            self._group_cache = [(lr_mult, decay_mult, [p for p, _ in members],
                                  [self.history[n] for _, n in members])
                                 for (lr_mult, decay_mult), members in groups.items()]
        return self._group_cache

    def _apply_groups(self, rate, step):
        c = self.config
        for lr_mult, decay_mult, params, histories in self._groups():
            grads = [p.grad for p in params]
            if c.iter_size > 1:
                torch._foreach_mul_(grads, 1.0 / c.iter_size)
            local_decay = c.weight_decay * decay_mult
            if local_decay:
                if c.regularization_type == "L2":
                    torch._foreach_add_(grads, params, alpha=local_decay)
                else:
                    torch._foreach_add_(grads, [torch.sign(p) for p in params], alpha=local_decay)
            history = [list(h) for h in zip(*histories)]  # per history slot, the group's tensors
            updates = self.compute_updates(grads, history, rate * lr_mult, step)
            torch._foreach_sub_(params, updates)

    def compute_update(self, grad, history, local_rate, step):
        raise NotImplementedError

    # -- state ------------------------------------------------------------
    def state_dict(self):
        return {name: [h.detach().cpu().clone() for h in hist] for name, hist in self.history.items()}

    def load_state_dict(self, state, where="solverstate"):
        missing = [n for n in self.history if n not in state]
        if missing:
            raise ConfigError(f"{where}: no {type(self).__name__} history for "
                              f"{', '.join(missing)} (was it written for another net or solver type?)")
        for name, hist in self.history.items():
            saved = state[name]
            if len(saved) != len(hist) or any(a.shape != b.shape for a, b in zip(saved, hist)):
                raise ConfigError(f"{where}: the history of '{name}' does not fit the parameter "
                                  f"({[tuple(s.shape) for s in saved]} vs "
                                  f"{[tuple(h.shape) for h in hist]})")
            for h, s in zip(hist, saved):
                h.copy_(s)


class SGD(Updater):
    multi_tensor = True

    def compute_update(self, grad, history, local_rate, step):
        h, = history
        h.mul_(self.config.momentum).add_(grad, alpha=local_rate)
        return h

    def compute_updates(self, grads, history, local_rate, step):
        h, = history
        torch._foreach_mul_(h, self.config.momentum)
        torch._foreach_add_(h, grads, alpha=local_rate)
        return h


class Nesterov(Updater):
    def compute_update(self, grad, history, local_rate, step):
        h, = history
        momentum = self.config.momentum
        previous = h.clone()
        h.mul_(momentum).add_(grad, alpha=local_rate)
        return h * (1.0 + momentum) - previous * momentum


class AdaGrad(Updater):
    def compute_update(self, grad, history, local_rate, step):
        h, = history
        h.add_(grad * grad)
        return grad / (h.sqrt() + self.config.delta) * local_rate


class RMSProp(Updater):
    def compute_update(self, grad, history, local_rate, step):
        h, = history
        decay = self.config.rms_decay
        h.mul_(decay).add_(grad * grad, alpha=1.0 - decay)
        return grad / (h.sqrt() + self.config.delta) * local_rate


class AdaDelta(Updater):
    """history[0]: running mean of grad^2; history[1]: running mean of update^2
    (before the learning rate, as Caffe keeps it)."""

    history_size = 2

    def compute_update(self, grad, history, local_rate, step):
        mean_grad_sq, mean_update_sq = history
        momentum, delta = self.config.momentum, self.config.delta
        mean_grad_sq.mul_(momentum).add_(grad * grad, alpha=1.0 - momentum)
        update = grad * ((mean_update_sq + delta) / (mean_grad_sq + delta)).sqrt()
        mean_update_sq.mul_(momentum).add_(update * update, alpha=1.0 - momentum)
        return update * local_rate


class Adam(Updater):
    """history[0]: m, history[1]: v; bias correction with t = step + 1 as Caffe."""

    history_size = 2
    multi_tensor = True

    def _correction(self, step):
        beta1, beta2 = self.config.momentum, self.config.momentum2
        t = step + 1
        return math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)

    def compute_update(self, grad, history, local_rate, step):
        m, v = history
        beta1, beta2 = self.config.momentum, self.config.momentum2
        m.mul_(beta1).add_(grad, alpha=1.0 - beta1)
        v.mul_(beta2).add_(grad * grad, alpha=1.0 - beta2)
        return m / (v.sqrt() + self.config.delta) * (local_rate * self._correction(step))

    def compute_updates(self, grads, history, local_rate, step):
        m, v = history
        beta1, beta2 = self.config.momentum, self.config.momentum2
        torch._foreach_mul_(m, beta1)
        torch._foreach_add_(m, grads, alpha=1.0 - beta1)
        squares = torch._foreach_mul(grads, grads)
        torch._foreach_mul_(v, beta2)
        torch._foreach_add_(v, squares, alpha=1.0 - beta2)
        denominators = torch._foreach_sqrt(v)
        torch._foreach_add_(denominators, self.config.delta)
        updates = torch._foreach_div(m, denominators)
        torch._foreach_mul_(updates, local_rate * self._correction(step))
        return updates


UPDATERS = {cls.__name__: cls for cls in (SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam)}


def make_updater(params, config):
    """The Updater for config.type over Net.learnable_params()."""
    try:
        cls = UPDATERS[config.type]
    except KeyError:
        raise ConfigError(f"unknown solver type '{config.type}' "
                          f"(known: {', '.join(UPDATERS)})") from None
    return cls(params, config)
