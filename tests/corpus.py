"""Real-world request shapes for tests and benchmarks (the seed's line, system instructions, tools,
schemas)."""

from __future__ import annotations

import base64
import random

import orjson

SEED_LINE = {
    "request": {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "List objects in this image."},
                    {
                        "file_data": {
                            "file_uri": "gs://cloud-samples-data/generative-ai/image/office-desk.jpeg",
                            "mime_type": "image/jpeg",
                        }
                    },
                ],
            }
        ],
        "generationConfig": {"temperature": 0.4},
    }
}

PNG_1PX = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c63f8cfc0f01f0005000201ff2ad0d4"
        "0000000049454e44ae426082"
    )
).decode()

CORPUS = [
    SEED_LINE,
    {
        "request": {
            "contents": [{"role": "user", "parts": [{"text": "Summarize: the quick brown fox."}]}]
        }
    },
    {
        "key": "sys-1",
        "request": {
            "systemInstruction": {"parts": [{"text": "You are a terse assistant."}]},
            "contents": [{"role": "user", "parts": [{"text": "Capital of France?"}]}],
        },
    },
    {
        "request": {
            "system_instruction": {"parts": {"text": "Docs style: parts as one object."}},
            "contents": {"role": "user", "parts": {"text": "Hello"}},
        }
    },
    {
        "request": {
            "contents": [
                {"role": "user", "parts": [{"text": "Hi"}]},
                {"role": "model", "parts": [{"text": "Hello! How can I help?"}]},
                {"role": "user", "parts": [{"text": "Tell me a joke."}]},
            ]
        }
    },
    {
        "request": {
            "contents": [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}],
            "tools": [
                {
                    "functionDeclarations": [
                        {
                            "name": "get_weather",
                            "description": "Weather for a city",
                            "parameters": {
                                "type": "OBJECT",
                                "properties": {"city": {"type": "STRING"}},
                                "required": ["city"],
                            },
                        }
                    ]
                }
            ],
            "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
        }
    },
    {
        "request": {
            "contents": [{"role": "user", "parts": [{"text": "Is this safe?"}]}],
            "safetySettings": [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "threshold": "BLOCK_ONLY_HIGH"}
            ],
        }
    },
    {
        "request": {
            "contents": [{"role": "user", "parts": [{"text": "Extract the name and age."}]}],
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseSchema": {
                    "type": "OBJECT",
                    "properties": {"name": {"type": "STRING"}, "age": {"type": "INTEGER"}},
                    "required": ["name"],
                },
                "temperature": 0,
                "maxOutputTokens": 256,
                "thinkingConfig": {"thinkingBudget": 0},
            },
        }
    },
    {
        "request": {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"inlineData": {"mimeType": "image/png", "data": PNG_1PX}},
                        {"text": "What color is this pixel?"},
                    ],
                }
            ]
        }
    },
    {
        "request": {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"text": "Describe"},
                        {
                            "fileData": {
                                "fileUri": "gs://cloud-samples-data/video/animals.mp4",
                                "mimeType": "video/mp4",
                            },
                            "videoMetadata": {"startOffset": "1.5s", "endOffset": "10s"},
                        },
                    ],
                }
            ],
            "labels": {"team": "search"},
        }
    },
    {
        "request": {
            "contents": [{"role": "user", "parts": [{"text": "x"}]}],
            "generation_config": {
                "top_p": 0.9,
                "top_k": 40,
                "candidate_count": 1,
                "stop_sequences": ["END"],
                "seed": 7,
                "response_modalities": ["TEXT"],
            },
        }
    },
]


def bench_request(i: int, rng: random.Random, size: int = 2000) -> dict:
    """A ~2 KB request of the kind users send in bulk: a system instruction, a long prompt, a
    schema."""
    words = " ".join(
        rng.choice(("alpha", "beta", "gamma", "delta", "epsilon", "zeta")) for _ in range(size // 7)
    )
    return {
        "key": f"item-{i}",
        "request": {
            "systemInstruction": {"parts": [{"text": "Classify the review and extract facts."}]},
            "contents": [{"role": "user", "parts": [{"text": f"Review {i}: {words}"}]}],
            "generationConfig": {
                "temperature": 0.2,
                "maxOutputTokens": 512,
                "responseMimeType": "application/json",
                "responseSchema": {
                    "type": "OBJECT",
                    "properties": {
                        "sentiment": {"type": "STRING", "enum": ["pos", "neg", "neutral"]},
                        "facts": {"type": "ARRAY", "items": {"type": "STRING"}},
                    },
                },
            },
            "safetySettings": [
                {"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_LOW_AND_ABOVE"}
            ],
        },
    }


def write_jsonl(path, lines) -> None:
    with open(path, "wb") as f:
        for line in lines:
            f.write(line if isinstance(line, bytes) else orjson.dumps(line))
            f.write(b"\n")
