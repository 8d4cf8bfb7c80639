"""The agent SDK: write a specialist as a few decorated skills.

```python
agent = Agent("sanctions-agent")

@agent.skill("sanctions-screening", tools=["sanctions.search"])
async def screen(request: ScreeningInput, tools: ToolBox) -> ScreeningOutput: ...

def main() -> None:
    agent.run()
```
"""

from accord.agent.agent import Agent
from accord.agent.executor import SkillExecutor
from accord.agent.grants import GrantExchange, GrantTokens, NoGrant
from accord.agent.settings import AgentSettings
from accord.agent.skills import Skill
from accord.agent.tools import TokenProvider, ToolBox, ToolClient
from accord.payloads import RESULT_ARTIFACT

__all__ = [
    "RESULT_ARTIFACT",
    "Agent",
    "AgentSettings",
    "GrantExchange",
    "GrantTokens",
    "NoGrant",
    "Skill",
    "SkillExecutor",
    "TokenProvider",
    "ToolBox",
    "ToolClient",
]
