"""The OpenAI API under /v1: Chat Completions and the model list, in OpenAI's
shapes, so that the openai SDKs and the tools built on them work unchanged.

A call is a question like any other (askgate.questions.service): the same rate
limit, per-user slot, daily quota, storage and cancellation.
"""
