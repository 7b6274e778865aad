"""AWS's cost metrics of a recommendation, by the formula its own published example satisfies.

The example: ml.c5d.xlarge, InitialInstanceCount 3, CostPerHour 0.69, MaxInvocations 1113,
CostPerInference 1.0332434612791985e-05. CostPerHour is the hourly price of the instance type times the
instance count; CostPerInference is CostPerHour / (MaxInvocations × 60), MaxInvocations counting requests a
minute. The example's value is that quotient computed in single precision (float32(0.69) / float32(66780),
widened back to a double); in double precision it would be 1.0332434860736747e-05. jobforge divides as AWS
does, so that the same inputs give AWS's number to the last bit.
"""

from __future__ import annotations

import struct

PRICE_DECIMALS = 6  # hourly prices are published to 4 decimals; 0.23 × 3 is 0.69, not 0.6900000000000001


def _single(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


def cost_per_hour(price_per_hour: float, instance_count: int) -> float:
    return round(price_per_hour * instance_count, PRICE_DECIMALS)


def cost_per_inference(cost_per_hour_: float, max_invocations: int) -> float | None:
    """The cost of one invocation at MaxInvocations (requests a minute); None when nothing was served."""
    if max_invocations <= 0:
        return None
    # The quotient of two singles, computed in double and rounded once to single, is the single-precision quotient.
    return _single(_single(cost_per_hour_) / _single(max_invocations * 60))

