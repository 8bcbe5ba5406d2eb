// Form pieces both tabs use: a labelled field that shows the API's message about it beside it,
// and the model picker.
import type { ComponentChildren } from 'preact';
import type { Model } from './api.js';

export function Field({ name, label, error, children }: { name: string; label: string; error?: string | undefined; children: ComponentChildren }) {
  return (
    <label class={error ? 'field invalid' : 'field'} data-field={name}>
      <span>{label}</span>
      {children}
      {error && <small class="field-error" role="alert" data-testid={`error-${name}`}>{error}</small>}
    </label>
  );
}

export function ModelPicker({ models, value, onChange }: { models: Model[]; value: string; onChange: (id: string) => void }) {
  return (
    <Field name="model" label="Model">
      <select name="model" value={value} onChange={(e) => onChange(e.currentTarget.value)}>
        {models.map((m) => <option value={m.id}>{m.id}</option>)}
      </select>
    </Field>
  );
}
