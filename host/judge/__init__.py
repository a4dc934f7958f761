"""Pass rules: what makes `k210 verify` and `k210 hil` say PASS, per output, in the output's own units.

- rules.py: each output's kind (scores, values, or part of a decoded task) and its tolerance, guessed
  from the model and set from the model card or the command line;
- judge.py: one output against its reference under its rule, and the "uninformative reference" check;
- identity.py: board vs simulator, held to bit identity within a documented allowance;
- tasks.py: detectors and masks judged by what the user sees (decoded boxes, thresholded masks).
"""
