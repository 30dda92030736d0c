import { type DynamicModule, Module } from '@nestjs/common';
import {
  NAIVE_OPTIONS,
  NaiveImageController,
  type NaiveOptions,
} from './naive-image.controller';

@Module({})
export class NaiveModule {
  static forRoot(options: NaiveOptions): DynamicModule {
    return {
      module: NaiveModule,
      controllers: [NaiveImageController],
      providers: [{ provide: NAIVE_OPTIONS, useValue: options }],
    };
  }
}
