// Chat templates: renders a model's Jinja chat_template (tokenizer_config.json or GGUF
// tokenizer.chat_template) with @huggingface/jinja, falling back to plain ChatML when the model has none.
import { Template } from "@huggingface/jinja";

export interface ChatMessage {
  role: string;
  content: string;
}

/** Plain ChatML, what Qwen2/2.5 use (without the default system prompt of the instruct models). */
export const CHATML_TEMPLATE =
  "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

export interface RenderChatOptions {
  /** Appends the assistant turn opener (default true). */
  addGenerationPrompt?: boolean;
  bosToken?: string | null;
  eosToken?: string | null;
  /** Extra template variables (e.g. { enable_thinking: false } for Qwen3 templates, tools). */
  extra?: Record<string, unknown>;
}

const compiled = new Map<string, Template>();

function compile(source: string): Template {
  let t = compiled.get(source);
  if (!t) {
    try {
      t = new Template(source);
    } catch (e) {
      throw new Error(`chat template does not parse: ${(e as Error).message}`);
    }
    if (compiled.size > 32) compiled.clear();
    compiled.set(source, t);
  }
  return t;
}

/** Renders `messages` with `template` (ChatML when null/undefined/empty). */
export function renderChat(template: string | null | undefined, messages: ChatMessage[], opts: RenderChatOptions = {}): string {
  for (const [i, m] of messages.entries()) {
    if (typeof m?.role !== "string" || typeof m?.content !== "string") {
      throw new Error(`chat message ${i}: expected { role: string, content: string }`);
    }
  }
  const src = template && template.trim() !== "" ? template : CHATML_TEMPLATE;
  const t = compile(src);
  try {
    return t.render({
      messages,
      add_generation_prompt: opts.addGenerationPrompt ?? true,
      bos_token: opts.bosToken ?? "",
      eos_token: opts.eosToken ?? "",
      ...opts.extra,
    });
  } catch (e) {
    throw new Error(`chat template failed to render: ${(e as Error).message}`);
  }
}
