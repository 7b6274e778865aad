"""SageMaker AgentRFT and AgentRFTEvaluation jobs: multi-turn RL of the user's agent, and its evaluation.

The worker holds the policy and serves it to the job runtime API (``policy_server``); each step it sends
prompts to the user's agent (``agents``), which samples through the runtime API and reports its reward;
the captured turns train the policy (``training``) or are scored (``evaluation``).
"""
